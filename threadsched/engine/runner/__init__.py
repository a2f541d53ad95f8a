"""The scheduled dataset runner: a recipe's column DAG over row groups on one ``Scheduler``."""
