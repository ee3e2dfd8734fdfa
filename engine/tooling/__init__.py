"""What is built on the engine: the command line, training, exports and the benchmark.
Nothing below imports from here.
"""
