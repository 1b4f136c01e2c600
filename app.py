"""ATLD lab — the Streamlit app. Run with `streamlit run app.py`.

The entry script draws the sidebar (checkpoint, dataset, seed: chosen once, kept across pages)
and hands over to the page chosen in the navigation. Pages live in app_pages/ and stay thin: every
computation is a call into the `atld` package. The Home page and the sidebar import no torch;
the heavy imports happen in a background thread after the first page is drawn."""

from __future__ import annotations

import streamlit as st

from atld.ui import state

st.set_page_config(page_title="ATLD lab", page_icon=":material/explore:", layout="wide")

# The pages live in app_pages/, not pages/: Streamlit treats a `pages/` folder beside the entry
# script as a legacy multipage app and, on a fresh server's first request, resolves a deep link
# (/attack) against that folder's file names before st.navigation runs, showing "Page not found"
# over the right page.
PAGES = [
    st.Page("app_pages/home_page.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("app_pages/train_page.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("app_pages/attack_page.py", title="Attack", icon=":material/target:", url_path="attack"),
    st.Page("app_pages/latent_page.py", title="Latent explorer", icon=":material/scatter_plot:", url_path="latent"),
    st.Page("app_pages/evaluate_page.py", title="Evaluate", icon=":material/fact_check:", url_path="evaluate"),
    st.Page("app_pages/learn_page.py", title="Learn", icon=":material/school:", url_path="learn"),
]

state.sidebar()
page = st.navigation(PAGES)
page.run()
state.background_start()  # after the first page is drawn: import torch & co., warm up UMAP
