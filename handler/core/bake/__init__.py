"""What only the image build runs (and `python -m handler download` locally): fetch, verify,
rewrite decomposed deformable convolutions as native DeformConv, pre-optimise, record."""
