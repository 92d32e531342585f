"""The workbench Gradio app (installed as ``workbench_ui``); see :mod:`workbench_ui.app`."""
