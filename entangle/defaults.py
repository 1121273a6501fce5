"""The one home of EAGC's and SOC's defaults (docs/quantities.md, EAGC; docs/architecture.md).

Every signature, dataclass field and CLI option with these defaults reads them from here
(the CLI through the dataclass fields), so a default changes in one place. Torch-free, so
importing it costs nothing.
"""

# conceptor aperture of the EAGC authors' scripts (tuned on DINO ViT-B/16 features)
APERTURE = 2.0
# lambda_AGA, the anchor-alignment weight of the authors' scripts
AGA_WEIGHT = 0.7
# beta, the EEP projection strength of the authors' scripts (3.0 for SimGCD on Cars/Aircraft)
EEP_WEIGHT = 0.5
# k, the SOC / principal-angle subspace dimension of the paper (docs/quantities.md)
SOC_K = 16
# neighbours per row of the k-NN overlap in every epoch record and the report's overlap figure
# (docs/records.md): fixed, so one key always means one k
KNN_K = 10
