"""Engagement analytics on a loaded dataset: warehouse models, anomalies, forecasts and an HTML report.

``customerio-pipeline models`` builds the models (:mod:`.models`) and writes anomalies and forecasts
(:mod:`.anomalies`, :mod:`.forecast`) through :func:`customerio_source.runner.load`;
``customerio-pipeline report`` writes one self-contained HTML file (:mod:`.report`). Every definition
(what is counted, which timestamp places it on a day, the rates, the detector's defaults) lives in
:mod:`.definitions`.
"""
