"""The training engine: ultralytics subclasses and callbacks, imported only when used (``import yolo_act_swap`` does
not import ultralytics' trainer).

- ``engine.optim``: activation parameters in optimizer groups of their own (any training loop; no ultralytics).
- ``engine.amp``: the AMP check that never downloads.
- ``engine.callbacks``: the trainer's callbacks (``CALLBACKS``), where training-time features hook in.
- ``engine.result``: ``act_swap_result.json``.
- ``engine.validator``: ``ActSwapValidator``, ``coco_eval``, ``val()``.
- ``engine.trainer``: ``ActSwapTrainer``.
- ``engine.model``: the ``YOLO`` wrapper.
- ``engine.run``: ``prepare_run``, ``train()``, ``resume()`` from plain arguments.
"""
