"""What a shard reader does with an invalid record: the choices of --bad_records and of input_pipeline.make_dataset.

  fail  stop, naming the shard file and the record's index in it
  skip  drop the record, log it and read on

Here without TensorFlow, so that the trainer's config loads before the Keras backend is chosen.
"""

BAD_RECORDS = ("fail", "skip")
