"""PS3.15 Table E.1-1, as it applies to an export de-identified with the Basic Application Level
Confidentiality Profile and its Retain Longitudinal Temporal Information with Modified Dates
Option: which attributes are removed (X), emptied (Z) or given a dummy value (D).

Three kinds of attribute are not listed here because dicognito handles every one of them, at any
depth: UIDs (U: replaced, the same original by the same new UID across an export), person names
(PN, whether the table says Z or D: a pseudonym, the same person by the same pseudonym) and the
dates and date-times (DA, DT: which the option keeps, all moved by one offset). Identifiers that
the table empties and dicognito replaces (PatientID, StudyID, AccessionNumber, the order numbers)
get its pseudonym, which a Z allows. Where the table lets a choice depend on the IOD (X/Z, X/D,
X/Z/D) the attribute is removed, or emptied where X/Z names a Type 2 attribute of the radiograph
IODs (AcquisitionContextSequence in DX). Attributes whose dates the option keeps (AdmittingDate,
ContrastBolusStartTime, ...) are not removed: their values move with the other dates, and a time
of day stays as it was, since the offset is a whole number of days.

Tags given in hex are newer than pydicom's data dictionary (gender identity, pronouns,
diagnoses)."""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword
from pydicom.tag import BaseTag, Tag


def _tags(listing: str) -> frozenset[BaseTag]:
    """Keywords, or 8-digit hex tags, separated by white space; an unknown keyword fails at import
    rather than leaving an attribute in place."""
    tags = set()
    for name in listing.split():
        number = tag_for_keyword(name)
        if number is None and len(name) == 8:
            number = int(name, 16)
        if number is None:
            raise ValueError(f"not a DICOM keyword: {name}")
        tags.add(Tag(number))
    return frozenset(tags)


REMOVED = _tags(
    """
    AcquisitionComments AcquisitionDeviceProcessingDescription AcquisitionProtocolDescription
    ActualHumanPerformersSequence AdditionalPatientHistory AddressTrial AdmissionID
    AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription AffectedSOPInstanceUID Allergies
    AnnotationGroupDescription Arbitrary AuthorObserverSequence BeamDescription BolusDescription
    BranchOfService CameraOwnerName CassetteID
    ClinicalTrialProtocolEthicsCommitteeApprovalNumber ClinicalTrialSeriesDescription
    ClinicalTrialSeriesID ClinicalTrialTimePointDescription CommentsOnRadiationDose
    CommentsOnThePerformedProcedureStep CompensatorDescription
    ConfidentialityConstraintOnPatientDataDescription ConsultingPhysicianIdentificationSequence
    ContainerComponentID ContainerDescription ContentCreatorIdentificationCodeSequence
    ContributionDescription CountryOfResidence CurrentObserverTrial CurrentPatientLocation
    CustodialOrganizationSequence DataSetTrailingPadding DecompositionDescription
    DerivationDescription DetectorID DeviceDescription DeviceSerialNumber DeviceSettingDescription
    DigitalSignaturesSequence DischargeDiagnosisDescription DisplacementReferenceLabel
    DistributionAddress DistributionName DoseReferenceDescription EntityDescription EntityName
    EquipmentFrameOfReferenceDescription EthnicGroup EthnicGroupCodeSequence 00102162
    FilterLookupTableDescription FixationDeviceDescription FractionGroupDescription FrameComments
    GantryID 00100041 00100044 00100045 GeneratorID
    GPSAltitude GPSAltitudeRef GPSAreaInformation GPSDestBearing GPSDestBearingRef
    GPSDestDistance GPSDestDistanceRef GPSDestLatitude GPSDestLatitudeRef GPSDestLongitude
    GPSDestLongitudeRef GPSDifferential GPSDOP GPSImgDirection GPSImgDirectionRef GPSLatitude
    GPSLatitudeRef GPSLongitude GPSLongitudeRef GPSMapDatum GPSMeasureMode GPSProcessingMethod
    GPSSatellites GPSSpeed GPSSpeedRef GPSStatus GPSTimeStamp GPSTrack GPSTrackRef GPSVersionID
    00081304 HumanPerformerName HumanPerformerOrganization IconImageSequence IdentifyingComments
    ImageComments ImagePresentationComments ImagingServiceRequestComments Impressions
    InstanceOriginStatus InstitutionAddress InstitutionalDepartmentName
    InstitutionalDepartmentTypeCodeSequence InstitutionCodeSequence InstitutionName
    InsurancePlanIdentification IntendedRecipientsOfResultsIdentificationSequence
    InterpretationApproverSequence InterpretationAuthor InterpretationDiagnosisDescription
    InterpretationID InterpretationIDIssuer InterpretationRecorder InterpretationText
    InterpretationTranscriber IssuerOfAdmissionID IssuerOfAdmissionIDSequence
    IssuerOfClinicalTrialProtocolID IssuerOfClinicalTrialSeriesID IssuerOfClinicalTrialSiteID
    IssuerOfClinicalTrialSubjectID IssuerOfClinicalTrialSubjectReadingID
    IssuerOfClinicalTrialTimePointID IssuerOfPatientID IssuerOfServiceEpisodeID
    IssuerOfServiceEpisodeIDSequence LensMake LensModel LensSerialNumber LensSpecification
    LongDeviceDescription MAC MakerNote MedicalAlerts MedicalRecordLocator MilitaryRank
    ModifiedAttributesSequence ModifiedImageDescription ModifyingDeviceID 0040B03B 0040B03F
    MultienergyAcquisitionDescription NameOfPhysiciansReadingStudy
    NamesOfIntendedRecipientsOfResults 00100011 00100012 00100013 NetworkID
    NonconformingDataElementValue NonconformingModifiedAttributesSequence Occupation
    OperatorIdentificationSequence OperatorsName OrderCallbackPhoneNumber
    OrderCallbackTelecomInformation OrderEnteredBy OrderEntererLocation OriginalAttributesSequence
    Originator OtherClinicalTrialProtocolIDsSequence OtherPatientIDs OtherPatientIDsSequence
    OtherPatientNames ParticipantSequence PatientAddress PatientAge PatientBirthName
    PatientBirthTime PatientComments PatientInstitutionResidence PatientInsurancePlanCodeSequence
    PatientMotherBirthName PatientPrimaryLanguageCodeSequence
    PatientPrimaryLanguageModifierCodeSequence PatientReligiousPreference PatientSetupPhotoDescription
    PatientSize PatientState PatientTelecomInformation PatientTelephoneNumbers
    PatientTransportArrangements PatientTreatmentPreparationMethodDescription
    PatientTreatmentPreparationProcedureParameterDescription PatientWeight PerformedLocation
    PerformedProcedureStepDescription PerformedProcedureStepID PerformedStationAETitle
    PerformedStationGeographicLocationCodeSequence PerformedStationName
    PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence
    PerformingPhysicianName PersonAddress PersonTelecomInformation PersonTelephoneNumbers
    PhysicianApprovingInterpretation PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
    PhysiciansReadingStudyIdentificationSequence PlateID PositionAcquisitionTemplateDescription
    PositionAcquisitionTemplateName PregnancyStatus PreMedication PrescriptionDescription 00081301
    00081302 00081303 PriorTreatmentDoseDescription 00100014 00100015 00100016 ProtocolName
    PyramidDescription PyramidLabel ReasonForOmissionDescription
    ReasonForRequestedProcedureCodeSequence ReasonForStudy ReasonForTheImagingServiceRequest
    ReasonForTheRequestedProcedure ReasonForVisit ReasonForVisitCodeSequence ReceivingAE
    ReferencedDigitalSignatureSequence ReferencedPatientAliasSequence
    ReferencedPatientPhotoSequence ReferencedPatientSequence
    ReferencedPerformedProcedureStepSequence ReferencedSOPInstanceMACSequence
    ReferringPhysicianAddress ReferringPhysicianIdentificationSequence
    ReferringPhysicianTelephoneNumbers RegionOfResidence RequestAttributesSequence
    RequestedContrastAgent RequestedProcedureComments RequestedProcedureID
    RequestedProcedureLocation RequestedSeriesDescription RequestingAE RequestingPhysician
    RequestingService RespiratoryMotionCompensationTechniqueDescription ResponsibleOrganization
    ResponsiblePerson ResultsComments ResultsDistributionListSequence ResultsID ResultsIDIssuer
    RetrieveAETitle ROICreatorSequence ROIDescription ROIGenerationDescription
    ROIInterpreterSequence ROIObservationDescription ROIObservationLabel RTPlanDescription
    RTPlanName RTTreatmentApproachLabel ScheduledHumanPerformersSequence
    ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianIdentificationSequence
    ScheduledPerformingPhysicianName ScheduledProcedureStepDescription ScheduledProcedureStepID
    ScheduledProcedureStepLocation ScheduledStationAETitle
    ScheduledStationGeographicLocationCodeSequence ScheduledStationName
    ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
    SeriesDescription ServiceEpisodeDescription ServiceEpisodeID SetupTechniqueDescription
    00100042 00100043 00100046 00100047 ShieldingDeviceDescription SlideIdentifier SmokingStatus
    SourceManufacturer SpecialNeeds SpecimenAccessionNumber SpecimenDetailedDescription
    SpecimenShortDescription StationAETitle StationName StructureSetDescription StructureSetName
    StudyComments StudyDescription StudyIDIssuer TelephoneNumberTrial TextComments TextString
    TopicAuthor TopicKeywords TopicSubject TopicTitle TransducerIdentificationSequence
    TreatmentSite TreatmentSites UDISequence UniqueDeviceIdentifier VerbalSourceTrial
    VerbalSourceIdentifierCodeSequenceTrial VisitComments WaveformFilterDescription
    XRayDetectorLabel
    """
)

EMPTIED = _tags(
    """
    AcquisitionContextSequence BarcodeValue ClinicalTrialCoordinatingCenterName
    ClinicalTrialProtocolName ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialTimePointID
    ConceptualVolumeCombinationDescription ConceptualVolumeDescription ContrastBolusAgent
    DeviceAlternateIdentifier FractionationNotes IssuerOfTheContainerIdentifierSequence
    IssuerOfTheSpecimenIdentifierSequence LabelText ManufacturerDeviceIdentifier PatientBirthDate
    PatientSex PatientSexNeutered PrescriptionNotes PrescriptionNotesSequence
    RadiationGenerationModeDescription ReasonForSuperseding ReferencedStudySequence
    RequestedProcedureDescription ReviewerName ROIName RTAccessoryDeviceSlotID
    RTAccessoryHolderSlotID RTPhysicianIntentNarrative SourceOfPreviousValues SourceSerialNumber
    SpecimenPreparationSequence TreatmentMachineName TreatmentTechniqueNotes
    VerifyingObserverIdentificationCodeSequence
    """
)

# D for a text attribute is a fixed dummy value; for a sequence or a binary value, which no dummy
# could stand in for meaningfully, removal (none of them belongs to a radiograph's IOD).
DUMMIED = _tags(
    """
    AcquisitionFieldOfViewLabel AnnotationGroupLabel CertificateOfSigner
    ClinicalTrialProtocolEthicsCommitteeName ClinicalTrialProtocolID ClinicalTrialSponsorName
    ClinicalTrialSubjectID ClinicalTrialSubjectReadingID ContainerIdentifier ContentSequence
    DestinationAE DeviceLabel EncapsulatedDocument EntityLabel EntityLongLabel FlowIdentifier
    FlowIdentifierSequence GraphicAnnotationSequence InterlockDescription
    InterlockOriginDescription ModifyingSystem PersonIdentificationCodeSequence
    RadiationDoseIdentificationLabel RadiationDoseInVivoMeasurementLabel
    RadiationGenerationModeLabel ReasonForTheAttributeModification RTPlanLabel
    RTPrescriptionLabel RTToleranceSetLabel SelectorAEValue SelectorASValue SelectorLOValue
    SelectorLTValue SelectorOBValue SelectorSHValue SelectorSTValue SelectorUNValue
    SelectorURValue SelectorUTValue SourceIdentifier SpecimenIdentifier StructureSetLabel
    TreatmentPositionGroupLabel TreatmentToleranceViolationDescription UserContentLabel
    UserContentLongLabel VerifyingObserverSequence VerifyingOrganization XRayDetectorID
    XRaySourceID
    """
)

# Curves (50xx,xxxx) and overlays (60xx,xxxx): the table removes curve data and overlay data and
# comments; an overlay's other attributes describe data that is then gone.
REMOVED_GROUPS = (range(0x5000, 0x5020, 2), range(0x6000, 0x6020, 2))
