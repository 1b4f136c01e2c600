"""ATLD lab — the Streamlit app. Run with `streamlit run app.py`.

The entry script draws the sidebar (checkpoint, dataset, seed: chosen once, kept across pages)
and hands over to the page chosen in the navigation. Pages live in app_pages/ and stay thin: they
read a checkpoint's facts from its card and show every computation as a view of the compute
service (`atld.ui.session.show`), never loading a model or a dataset in the server. The Home page
and the sidebar import no torch; the compute workers start after the first page
(`server.background_start`), and the server imports torch only after they have computed the first
views. The Latent explorer's first views come from the on-disk result store without a worker
(`atld.ui.result_store`)."""

from __future__ import annotations

import streamlit as st

from atld.ui import server, session

# Emoji, not Material icon names: a Material icon is a web font (fetched by the browser) and
# its name is read aloud as text by screen readers ("home Home"); emoji need no asset at all.
st.set_page_config(page_title="ATLD lab", page_icon="🛡️", layout="wide")

# The pages live in app_pages/, not pages/: Streamlit treats a `pages/` folder beside the entry
# script as a legacy multipage app and, on a fresh server's first request, resolves a deep link
# (/attack) against that folder's file names before st.navigation runs, showing "Page not found"
# over the right page.
PAGES = [
    st.Page("app_pages/home_page.py", title="Home", icon="🏠", url_path="home", default=True),
    st.Page("app_pages/train_page.py", title="Train", icon="🏋️", url_path="train"),
    st.Page("app_pages/attack_page.py", title="Attack", icon="🎯", url_path="attack"),
    st.Page("app_pages/latent_page.py", title="Latent explorer", icon="🌌", url_path="latent"),
    st.Page("app_pages/evaluate_page.py", title="Evaluate", icon="📏", url_path="evaluate"),
    st.Page("app_pages/learn_page.py", title="Learn", icon="🎓", url_path="learn"),
]

with server.script_activity():
    session.sidebar()
    page = st.navigation(PAGES)
    try:
        page.run()
    finally:  # once per server, after the first page (also one that stopped early): workers, first views
        server.background_start()
