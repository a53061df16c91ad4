"""Named SOP class UIDs, as `pydicom.uid.UID` values (e.g. `sop_class.Verification`).

This holds the service classes the engine serves so far (Verification); the
storage, query/retrieve and other SOP classes are added with their services.
"""

from pydicom.uid import UID

Verification = UID("1.2.840.10008.1.1")
