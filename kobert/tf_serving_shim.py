"""`python -m kobert.tf_serving_shim`: TF Serving's REST shape on loopback.

The shim imports TensorFlow, so it lives in the TF spoke, `kobert.runtimes.tf_serving_shim`; this
module keeps the command and the old import path working and imports no framework itself.
"""

from kobert.runtimes.tf_serving_shim import (DEFAULT_SIGNATURE, ROUTE, VERSION, BadRequest, Limits, ShimServer,
                                             load_signatures, main, make_server, predict, serving)

__all__ = ["DEFAULT_SIGNATURE", "ROUTE", "VERSION", "BadRequest", "Limits", "ShimServer", "load_signatures", "main",
           "make_server", "predict", "serving"]

if __name__ == "__main__":
    main()
