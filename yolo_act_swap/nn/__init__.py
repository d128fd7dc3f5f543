"""Model definitions: YOLOv7 modules and the detection-model classes that the ultralytics engine builds."""
