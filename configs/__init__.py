"""Built-in configs (models/, acts/, data/), shipped inside the wheel as ``yolo_act_swap.configs``."""
