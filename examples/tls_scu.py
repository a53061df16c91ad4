import ssl

from router.net import AE
from router.net.sop_class import Verification

ae = AE()
ae.add_requested_context(Verification)

# Create the SSLContext, your requirements may vary
# (a client context is made for SERVER_AUTH: Python 3.10+ refuses a client
# socket from the CLIENT_AUTH context the original tutorial shows)
ssl_cx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile='server.crt')
ssl_cx.verify_mode = ssl.CERT_REQUIRED
ssl_cx.load_cert_chain(certfile='client.crt', keyfile='client.key')

assoc = ae.associate("127.0.0.1", 11112, tls_args=(ssl_cx, None))
if assoc.is_established:
    assoc.release()
