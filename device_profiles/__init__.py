"""The shipped device profiles, as package data (``oplat.profile`` finds them here through
``importlib.resources``): one folder per device, one per framework and processor inside,
each holding ``profile.json`` and one XGBoost UBJ per regressor. Trained on the
mobile-ml-benchmark data (MIT licence; attribution in each profile's metadata)."""
