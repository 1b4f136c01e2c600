"""The Streamlit app's own code (docs/layout.md, "The app").

A *view* is one computation a page shows (`compute`: a frozen request and one function), run by
the compute service (`service`, `worker`, `result_store`). The pages' Streamlit-free logic (run
discovery and the validated card facts, what the Attack, Latent, Evaluate, Learn and Train pages
draw, exports) lives in `runs`, `display`, `attack`, `latent`, `evaluate`, `learn`, `train`,
`datasets` and `exports`, and is tested without a browser. `session` (what one browser session
holds, and `show`) and `server` (what the server holds for every session) are the
Streamlit-bound part. Nothing here imports Streamlit or torch at package import time.
"""
