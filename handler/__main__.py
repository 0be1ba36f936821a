from handler.local.cli import main

raise SystemExit(main())
