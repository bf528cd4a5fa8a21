"""The phantom cohort: a synthetic longitudinal cohort of knee radiographs.

anatomy.py   who a person is (bone shapes, texture seeds) and how their knees change over the years
render.py    one acquisition of one knee at one visit: projection, exposure, noise, markers
dicom.py     the DICOM twin of each image, with realistic tags and transfer syntaxes
cohort.py    the cohort on disk: people, visits, PNG and DICOM files, manifest.csv
"""
