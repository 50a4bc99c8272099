"""`kobert.spark`: bulk inference on Apache Spark (the API; pyspark lives in its spoke, kobert.runtimes.spark).

    from kobert import spark
    session = spark.session()                      # local[*], loopback only
    df = session.read.parquet("reviews.parquet")   # an id column and a text column
    spark.labels(df, "artifacts/default", runtime="onnx").write.parquet("labels")
"""

from kobert.runtimes.spark import (  # noqa: F401  (the public names)
    MARKER, TASKS, answers, embeddings, entities, export_config, is_job_error, job_error, job_session, labels,
    local_export, logits, loopback_cluster, predict, prepare_output, read_input, session, ship, write_output,
)
