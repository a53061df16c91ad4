from router.net import AE
from router.net.sop_class import Verification

ae = AE()
ae.add_supported_context(Verification)

# Listen for association requests
ae.start_server(("127.0.0.1", 11112))
