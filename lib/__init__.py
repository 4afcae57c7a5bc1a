"""lakehouse-mlops: shared logic behind the notebooks.

Importing any module here has no side effects: no Spark, no folders, no MLflow URIs.
"""
