"""The Streamlit app's own helpers.

Pure, Streamlit-free logic (run discovery and the validated card view, what the Attack, Latent,
Evaluate and Learn pages show, exports) lives in `runs`, `views`, `attack_view`, `latent_view`,
`evaluate_view`, `learn` and `exports`, and is tested without a browser; the Train form is
generated from `TrainConfig` by `atld.config.fields`. `state` and `cached` hold the
Streamlit-bound pieces (the settings check, cached loaders, the sidebar, the job manager).
Nothing here imports Streamlit or torch at package import time.
"""
