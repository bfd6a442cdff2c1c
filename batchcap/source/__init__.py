"""Where images come from: ``scan`` (folders, streamed), ``read`` (batched reads and the structural sniff),
``digest`` (content hashes and near-copy keys), ``shard`` (a stable I/N split), ``samples`` (generated images
for the demo, tests and benchmarks). Other packages import these modules directly.
"""
