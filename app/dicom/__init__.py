"""DICOM in and out: radiographs received by C-STORE, STOW-RS, a DICOMweb pull or from a disc, into
the gallery or a case's inbox; a case exported as a DICOM file-set, de-identified on request."""
