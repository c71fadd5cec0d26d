"""Dataset-building stages: pure ``ndarray -> ndarray`` functions plus their directory drivers.

Each ``mangacolor prepare`` subcommand reads a folder (or Danbooru metadata) and writes a folder,
so the stages chain in a shell script:

* :mod:`~mangacolor.prepare.danbooru` — select posts of a Danbooru dump by tags (``filter``);
* :mod:`~mangacolor.prepare.borders` — remove black / white letterbox padding (``crop``);
* :mod:`~mangacolor.prepare.lines` — line art from colour images (``lines``);
* :mod:`~mangacolor.prepare.pair` — match greyscale and colour pages by name (``pair``);
* :mod:`~mangacolor.prepare.aligned` — pix2pix's side-by-side A|B images (``hconcat`` / ``split``);
* :mod:`~mangacolor.prepare.runner` — the process-pool folder driver they share (workers, shards,
  resume, atomic writes, per-file failures).
"""
