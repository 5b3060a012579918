"""Airflow loads plugins from this folder (``[core] plugins_folder``): the painting_ml results
views and the app serving reports. The code lives in painting_ml.orchestration.results_plugin."""

from painting_ml.orchestration.results_plugin import PaintingResultsPlugin

__all__ = ["PaintingResultsPlugin"]
