"""Pictures: PNGs drawn headless on matplotlib's object API (no pyplot, no display).

  plots   2D samples over a mixture's modes; metric curves against the step, with the run's
          name and marks where collapse cases fired; recorded vs counterfactual branches;
          image grids titled with their metrics; `python -m jgen.evaluate --plot`'s picture
  imgrid  grids of small images (digits, photo crops) and single images at their resolution

Who may import it: datasets, the run loop, trainers, replays, studies, and commands
(jgen.evaluate's --plot). What it may import: jgen.core, and jgen.data and jgen.evals only for
what a picture shows (a mixture's modes and its mode metrics); never a dataset, the run loop,
a trainer, collapse, replays or studies. jgen.evals draws nothing, so pictures of its metrics
live here. Figures are freed once written: nothing here caches a figure.
"""
