"""The bundle: every config file under conf/ checked together (`validate`, what
`python run_pipeline.py --validate` runs, like `databricks bundle validate`) and the JSON
Schemas editors check them with (`schemas`, `make schemas`).

It sits above the stages (it reads the monitors', alerts' and jobs' models where they live),
and only run_pipeline.py imports it.
"""
