"""How good a model is, breed by breed, and whether an endpoint answers as the model does.

`metrics` (numbers from probabilities), `calibration` (the served temperature and confidence threshold),
`targets` (a model or an endpoint over a split), `report` (report.html / report.md), `evaluate` (one split
end to end, and what every training run does after its test) and `command` (`python -m dogbreed.evaluate`).
It sits above serving (it runs what serving serves) and below training (which calls it after the test).
"""
