"""What is asked of each image and what counts as an answer: ``quality`` (the caption quality gates).
"""
