"""Stand-ins for what runs this project in AWS, for tests on a machine without Docker."""
