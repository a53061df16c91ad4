"""Interoperability tests: our engine against real DICOM peers over loopback sockets."""
