"""The Streamlit app's own helpers.

Pure, Streamlit-free logic (run discovery, the training form, what the Attack page shows,
exports) lives in `runs`, `forms`, `views` and `exports` and is tested without a browser.
`state` holds the few Streamlit-bound pieces (cached loaders, the sidebar, the job manager).
Nothing here imports Streamlit or torch at package import time.
"""
