"""DAG workflows: files of tasks, durable runs, a parallel executor."""
