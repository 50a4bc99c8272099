"""`python -m kobert.bench --worker`: one benchmark worker (see `kobert.bench.worker.worker_main`)."""

import sys

from kobert.bench.worker import worker_main

if sys.argv[1:] != ["--worker"]:
    sys.exit("usage: python -m kobert.bench --worker  (one JSON request on stdin; see worker_main)")
sys.exit(worker_main())
