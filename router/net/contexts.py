"""Prebuilt presentation context lists and the transfer syntaxes a router accepts.

The lists carry pynetdicom's names: `StoragePresentationContexts` (the same
120 Storage SOP classes as pynetdicom 3.0's list, in its order, so that eight
more contexts still fit in an A-ASSOCIATE-RQ's 128), `AllStoragePresentationContexts`
(every Storage SOP class, for acceptors), `QueryRetrievePresentationContexts`
and friends. `ALL_TRANSFER_SYNTAXES` is every transfer syntax of PS3.6, and
`accept_all_storage` makes an AE accept every Storage SOP class in any of them:
a router passes compressed data through untouched, so it needs no codec.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydicom.uid import UID

from router.net import sop_class
from router.net.presentation import PresentationContext, VerificationPresentationContexts, build_context

if TYPE_CHECKING:
    from router.net.ae import AE

__all__ = [
    "ALL_TRANSFER_SYNTAXES",
    "AllStoragePresentationContexts",
    "BasicWorklistManagementPresentationContexts",
    "QueryRetrievePresentationContexts",
    "StorageCommitmentPresentationContexts",
    "StoragePresentationContexts",
    "VerificationPresentationContexts",
    "accept_all_storage",
    "all_storage_contexts",
]

# (PS3.6 keyword, UID): the four uncompressed defaults first (an acceptor takes the first of its
# syntaxes the requestor proposed), then the rest in UID order.
_TRANSFER_SYNTAXES: tuple[tuple[str, str], ...] = (
    ("ImplicitVRLittleEndian", "1.2.840.10008.1.2"),
    ("ExplicitVRLittleEndian", "1.2.840.10008.1.2.1"),
    ("DeflatedExplicitVRLittleEndian", "1.2.840.10008.1.2.1.99"),
    ("ExplicitVRBigEndian", "1.2.840.10008.1.2.2"),  # retired
    ("EncapsulatedUncompressedExplicitVRLittleEndian", "1.2.840.10008.1.2.1.98"),
    ("JPEGBaseline8Bit", "1.2.840.10008.1.2.4.50"),
    ("JPEGExtended12Bit", "1.2.840.10008.1.2.4.51"),
    ("JPEGExtended35", "1.2.840.10008.1.2.4.52"),  # retired
    ("JPEGSpectralSelectionNonHierarchical68", "1.2.840.10008.1.2.4.53"),  # retired
    ("JPEGSpectralSelectionNonHierarchical79", "1.2.840.10008.1.2.4.54"),  # retired
    ("JPEGFullProgressionNonHierarchical1012", "1.2.840.10008.1.2.4.55"),  # retired
    ("JPEGFullProgressionNonHierarchical1113", "1.2.840.10008.1.2.4.56"),  # retired
    ("JPEGLossless", "1.2.840.10008.1.2.4.57"),
    ("JPEGLosslessNonHierarchical15", "1.2.840.10008.1.2.4.58"),  # retired
    ("JPEGExtendedHierarchical1618", "1.2.840.10008.1.2.4.59"),  # retired
    ("JPEGExtendedHierarchical1719", "1.2.840.10008.1.2.4.60"),  # retired
    ("JPEGSpectralSelectionHierarchical2022", "1.2.840.10008.1.2.4.61"),  # retired
    ("JPEGSpectralSelectionHierarchical2123", "1.2.840.10008.1.2.4.62"),  # retired
    ("JPEGFullProgressionHierarchical2426", "1.2.840.10008.1.2.4.63"),  # retired
    ("JPEGFullProgressionHierarchical2527", "1.2.840.10008.1.2.4.64"),  # retired
    ("JPEGLosslessHierarchical28", "1.2.840.10008.1.2.4.65"),  # retired
    ("JPEGLosslessHierarchical29", "1.2.840.10008.1.2.4.66"),  # retired
    ("JPEGLosslessSV1", "1.2.840.10008.1.2.4.70"),
    ("JPEGLSLossless", "1.2.840.10008.1.2.4.80"),
    ("JPEGLSNearLossless", "1.2.840.10008.1.2.4.81"),
    ("JPEG2000Lossless", "1.2.840.10008.1.2.4.90"),
    ("JPEG2000", "1.2.840.10008.1.2.4.91"),
    ("JPEG2000MCLossless", "1.2.840.10008.1.2.4.92"),
    ("JPEG2000MC", "1.2.840.10008.1.2.4.93"),
    ("JPIPReferenced", "1.2.840.10008.1.2.4.94"),
    ("JPIPReferencedDeflate", "1.2.840.10008.1.2.4.95"),
    ("MPEG2MPML", "1.2.840.10008.1.2.4.100"),
    ("MPEG2MPMLF", "1.2.840.10008.1.2.4.100.1"),
    ("MPEG2MPHL", "1.2.840.10008.1.2.4.101"),
    ("MPEG2MPHLF", "1.2.840.10008.1.2.4.101.1"),
    ("MPEG4HP41", "1.2.840.10008.1.2.4.102"),
    ("MPEG4HP41F", "1.2.840.10008.1.2.4.102.1"),
    ("MPEG4HP41BD", "1.2.840.10008.1.2.4.103"),
    ("MPEG4HP41BDF", "1.2.840.10008.1.2.4.103.1"),
    ("MPEG4HP422D", "1.2.840.10008.1.2.4.104"),
    ("MPEG4HP422DF", "1.2.840.10008.1.2.4.104.1"),
    ("MPEG4HP423D", "1.2.840.10008.1.2.4.105"),
    ("MPEG4HP423DF", "1.2.840.10008.1.2.4.105.1"),
    ("MPEG4HP42STEREO", "1.2.840.10008.1.2.4.106"),
    ("MPEG4HP42STEREOF", "1.2.840.10008.1.2.4.106.1"),
    ("HEVCMP51", "1.2.840.10008.1.2.4.107"),
    ("HEVCM10P51", "1.2.840.10008.1.2.4.108"),
    ("JPEGXLLossless", "1.2.840.10008.1.2.4.110"),  # newer than pydicom 3.0's dictionary
    ("JPEGXLJPEGRecompression", "1.2.840.10008.1.2.4.111"),  # newer than pydicom 3.0's dictionary
    ("JPEGXL", "1.2.840.10008.1.2.4.112"),  # newer than pydicom 3.0's dictionary
    ("HTJ2KLossless", "1.2.840.10008.1.2.4.201"),
    ("HTJ2KLosslessRPCL", "1.2.840.10008.1.2.4.202"),
    ("HTJ2K", "1.2.840.10008.1.2.4.203"),
    ("JPIPHTJ2KReferenced", "1.2.840.10008.1.2.4.204"),
    ("JPIPHTJ2KReferencedDeflate", "1.2.840.10008.1.2.4.205"),
    ("RLELossless", "1.2.840.10008.1.2.5"),
    ("RFC2557MIMEEncapsulation", "1.2.840.10008.1.2.6.1"),  # retired
    ("XMLEncoding", "1.2.840.10008.1.2.6.2"),  # retired
    ("SMPTEST211020UncompressedProgressiveActiveVideo", "1.2.840.10008.1.2.7.1"),
    ("SMPTEST211020UncompressedInterlacedActiveVideo", "1.2.840.10008.1.2.7.2"),
    ("SMPTEST211030PCMDigitalAudio", "1.2.840.10008.1.2.7.3"),
    ("DeflatedImageFrameCompression", "1.2.840.10008.1.2.8.1"),  # newer than pydicom 3.0's dictionary
    ("Papyrus3ImplicitVRLittleEndian", "1.2.840.10008.1.20"),  # retired
)

ALL_TRANSFER_SYNTAXES: tuple[UID, ...] = tuple(UID(uid) for _, uid in _TRANSFER_SYNTAXES)
"""Every transfer syntax of PS3.6 (pydicom 3.0's dictionary and the four added since), retired ones included."""

# pynetdicom 3.0's selection of 120 Storage SOP classes, in its order (sorted as UID strings).
_STORAGE_SELECTION: tuple[UID, ...] = (
    sop_class.StoredPrintStorage,
    sop_class.HardcopyGrayscaleImageStorage,
    sop_class.HardcopyColorImageStorage,
    sop_class.ComputedRadiographyImageStorage,
    sop_class.DigitalXRayImageStorageForPresentation,
    sop_class.DigitalXRayImageStorageForProcessing,
    sop_class.DigitalMammographyXRayImageStorageForPresentation,
    sop_class.DigitalMammographyXRayImageStorageForProcessing,
    sop_class.DigitalIntraOralXRayImageStorageForPresentation,
    sop_class.DigitalIntraOralXRayImageStorageForProcessing,
    sop_class.StandaloneModalityLUTStorage,
    sop_class.EncapsulatedPDFStorage,
    sop_class.EncapsulatedCDAStorage,
    sop_class.StandaloneVOILUTStorage,
    sop_class.GrayscaleSoftcopyPresentationStateStorage,
    sop_class.ColorSoftcopyPresentationStateStorage,
    sop_class.PseudoColorSoftcopyPresentationStateStorage,
    sop_class.BlendingSoftcopyPresentationStateStorage,
    sop_class.XAXRFGrayscaleSoftcopyPresentationStateStorage,
    sop_class.XRayAngiographicImageStorage,
    sop_class.EnhancedXAImageStorage,
    sop_class.XRayRadiofluoroscopicImageStorage,
    sop_class.EnhancedXRFImageStorage,
    sop_class.XRayAngiographicBiPlaneImageStorage,
    sop_class.PositronEmissionTomographyImageStorage,
    sop_class.LegacyConvertedEnhancedPETImageStorage,
    sop_class.StandalonePETCurveStorage,
    sop_class.XRay3DAngiographicImageStorage,
    sop_class.XRay3DCraniofacialImageStorage,
    sop_class.BreastTomosynthesisImageStorage,
    sop_class.EnhancedPETImageStorage,
    sop_class.BasicStructuredDisplayStorage,
    sop_class.IntravascularOpticalCoherenceTomographyImageStorageForPresentation,
    sop_class.IntravascularOpticalCoherenceTomographyImageStorageForProcessing,
    sop_class.CTImageStorage,
    sop_class.EnhancedCTImageStorage,
    sop_class.LegacyConvertedEnhancedCTImageStorage,
    sop_class.NuclearMedicineImageStorage,
    sop_class.UltrasoundMultiFrameImageStorageRetired,
    sop_class.UltrasoundMultiFrameImageStorage,
    sop_class.MRImageStorage,
    sop_class.EnhancedMRImageStorage,
    sop_class.MRSpectroscopyStorage,
    sop_class.EnhancedMRColorImageStorage,
    sop_class.LegacyConvertedEnhancedMRImageStorage,
    sop_class.RTImageStorage,
    sop_class.RTDoseStorage,
    sop_class.RTStructureSetStorage,
    sop_class.RTBeamsTreatmentRecordStorage,
    sop_class.RTPlanStorage,
    sop_class.RTBrachyTreatmentRecordStorage,
    sop_class.RTTreatmentSummaryRecordStorage,
    sop_class.RTIonPlanStorage,
    sop_class.RTIonBeamsTreatmentRecordStorage,
    sop_class.NuclearMedicineImageStorageRetired,
    sop_class.UltrasoundImageStorageRetired,
    sop_class.UltrasoundImageStorage,
    sop_class.EnhancedUSVolumeStorage,
    sop_class.RawDataStorage,
    sop_class.SpatialRegistrationStorage,
    sop_class.SpatialFiducialsStorage,
    sop_class.DeformableSpatialRegistrationStorage,
    sop_class.SegmentationStorage,
    sop_class.SurfaceSegmentationStorage,
    sop_class.RealWorldValueMappingStorage,
    sop_class.SurfaceScanMeshStorage,
    sop_class.SurfaceScanPointCloudStorage,
    sop_class.SecondaryCaptureImageStorage,
    sop_class.MultiFrameSingleBitSecondaryCaptureImageStorage,
    sop_class.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    sop_class.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    sop_class.MultiFrameTrueColorSecondaryCaptureImageStorage,
    sop_class.VLImageStorageTrial,
    sop_class.VLEndoscopicImageStorage,
    sop_class.VideoEndoscopicImageStorage,
    sop_class.VLMicroscopicImageStorage,
    sop_class.VideoMicroscopicImageStorage,
    sop_class.VLSlideCoordinatesMicroscopicImageStorage,
    sop_class.VLPhotographicImageStorage,
    sop_class.VideoPhotographicImageStorage,
    sop_class.OphthalmicPhotography8BitImageStorage,
    sop_class.OphthalmicPhotography16BitImageStorage,
    sop_class.StereometricRelationshipStorage,
    sop_class.OphthalmicTomographyImageStorage,
    sop_class.VLWholeSlideMicroscopyImageStorage,
    sop_class.VLMultiFrameImageStorageTrial,
    sop_class.LensometryMeasurementsStorage,
    sop_class.AutorefractionMeasurementsStorage,
    sop_class.KeratometryMeasurementsStorage,
    sop_class.SubjectiveRefractionMeasurementsStorage,
    sop_class.VisualAcuityMeasurementsStorage,
    sop_class.SpectaclePrescriptionReportStorage,
    sop_class.OphthalmicAxialMeasurementsStorage,
    sop_class.IntraocularLensCalculationsStorage,
    sop_class.MacularGridThicknessAndVolumeReportStorage,
    sop_class.StandaloneOverlayStorage,
    sop_class.OphthalmicVisualFieldStaticPerimetryMeasurementsStorage,
    sop_class.OphthalmicThicknessMapStorage,
    sop_class.BasicTextSRStorage,
    sop_class.EnhancedSRStorage,
    sop_class.ComprehensiveSRStorage,
    sop_class.Comprehensive3DSRStorage,
    sop_class.ProcedureLogStorage,
    sop_class.MammographyCADSRStorage,
    sop_class.KeyObjectSelectionDocumentStorage,
    sop_class.ChestCADSRStorage,
    sop_class.XRayRadiationDoseSRStorage,
    sop_class.ColonCADSRStorage,
    sop_class.ImplantationPlanSRStorage,
    sop_class.StandaloneCurveStorage,
    sop_class.TwelveLeadECGWaveformStorage,
    sop_class.GeneralECGWaveformStorage,
    sop_class.AmbulatoryECGWaveformStorage,
    sop_class.HemodynamicWaveformStorage,
    sop_class.CardiacElectrophysiologyWaveformStorage,
    sop_class.BasicVoiceAudioWaveformStorage,
    sop_class.GeneralAudioWaveformStorage,
    sop_class.ArterialPulseWaveformStorage,
    sop_class.RespiratoryWaveformStorage,
    sop_class.RTBeamsDeliveryInstructionStorage,
)

StoragePresentationContexts: list[PresentationContext] = [build_context(uid) for uid in _STORAGE_SELECTION]
"""120 Storage SOP classes with the default transfer syntaxes: room for 8 more requested contexts."""

AllStoragePresentationContexts: list[PresentationContext] = [
    build_context(uid) for uid in sop_class.STORAGE_SOP_CLASSES
]
"""Every Storage SOP class, retired ones included: for acceptors, as it is more than one A-ASSOCIATE-RQ holds."""

QueryRetrievePresentationContexts: list[PresentationContext] = [
    build_context(uid) for uid in sorted(sop_class.QR_SOP_CLASSES + (sop_class.RepositoryQuery,))
]
"""The Q/R FIND, MOVE and GET SOP classes plus Repository Query, as pynetdicom lists them."""

StorageCommitmentPresentationContexts: list[PresentationContext] = [
    build_context(sop_class.StorageCommitmentPushModel)
]
BasicWorklistManagementPresentationContexts: list[PresentationContext] = [
    build_context(sop_class.ModalityWorklistInformationModelFind)
]


def all_storage_contexts(
    transfer_syntaxes: Iterable[str] = ALL_TRANSFER_SYNTAXES,
    scu_role: bool | None = None,
    scp_role: bool | None = None,
) -> list[PresentationContext]:
    """New supported contexts: every Storage SOP class, each in all of `transfer_syntaxes`.

    `scu_role`/`scp_role` are the roles to grant when a requestor proposes
    SCP/SCU Role Selection (e.g. `scp_role=True` to receive C-GET sub-operations).
    """
    syntaxes = list(transfer_syntaxes)
    contexts = []
    for uid in sop_class.STORAGE_SOP_CLASSES:
        context = build_context(uid, syntaxes)
        context.scu_role, context.scp_role = scu_role, scp_role
        contexts.append(context)
    return contexts


def accept_all_storage(ae: AE, scu_role: bool | None = None, scp_role: bool | None = None, unlisted: bool = False) -> None:
    """Make `ae` accept every Storage SOP class in every transfer syntax (merged with what it has).

    It also takes the syntax each requestor proposes first (`prefer_proposed_syntax`):
    an SCU offers its data's own syntax first, so what arrives is what was sent.
    With `unlisted`, storage classes our table does not name are accepted too:
    private ones and those of a later edition (`sop_class.may_be_storage`).
    """
    ae.prefer_proposed_syntax = True
    if unlisted:
        ae.unlisted_storage_syntaxes = ALL_TRANSFER_SYNTAXES
    for uid in sop_class.STORAGE_SOP_CLASSES:
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES, scu_role, scp_role)
