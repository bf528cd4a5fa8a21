"""Long work, done outside requests: the queue in the database (queue.py), the worker process that
runs it (worker.py), and one module per kind of job (rebuild.py, activation.py, training.py)."""
