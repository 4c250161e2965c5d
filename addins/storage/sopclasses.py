"""What the storage SCP negotiates: storage SOP classes and the transfer syntaxes it keeps.

The SOP classes come from pynetdicom's public ``AllStoragePresentationContexts`` (170 storage
SOP classes in pynetdicom 3.0, including retired ones), so the list follows the standard as
pynetdicom tracks it instead of being copied here.

Transfer syntaxes are in our order of preference, which decides when a peer proposes several
in one context (pacsref.association.negotiation: "our preference wins"). Compressed ones come
first: a peer that proposes JPEG and Explicit VR Little Endian in one context holds the JPEG
and would have to decompress to send the other; taking what it has keeps the object exactly
as the modality produced it, and we never transcode. Then the uncompressed ones, Explicit VR
Little Endian first (as DCMTK's storescp), Implicit VR Little Endian (the default every
application supports, PS3.5 10.1), Deflated and the retired Explicit VR Big Endian last.
"""

from __future__ import annotations

from pynetdicom.presentation import AllStoragePresentationContexts

__all__ = ["STORAGE_SOP_CLASSES", "TRANSFER_SYNTAXES"]

#: Every storage SOP class pynetdicom knows.
STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    str(context.abstract_syntax) for context in AllStoragePresentationContexts
)

#: What we accept and store byte for byte (PS3.5 Annex A, PS3.6 Annex A).
TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Lossy (Near-Lossless)
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Image Compression (Lossless Only)
    "1.2.840.10008.1.2.4.91",  # JPEG 2000 Image Compression
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
)
