"""OpusBlocks Workbench: the frame (page config, sign-in, navigation by role, status).

Run with ``streamlit run app.py`` (``make run`` migrates, seeds the demo and prints the first
admin's password first).
"""

import streamlit as st

from core import environments, ui

st.set_page_config(page_title="OpusBlocks Workbench", page_icon=":material/fact_check:", layout="wide")

refused = environments.refusal("web app")  # staging, production: development key, old schema, unpinned prompts
if refused:
    st.error(refused, icon=":material/block:")
    st.stop()
ui.engine()  # migrations run once per process, inside the cached factory
identity = ui.signed_in()  # the session's sign-in, resumed (and checked) on every run
page = ui.navigation(identity)  # the sign-in page alone, or the pages this role may open
if identity is None:
    page.run()
    st.stop()
ui.render_identity(identity)
ui.render_status()
ui.render_controls_banner(ui.generation_status())  # kill switch and open breakers, above every page
ui.render_key_warning()  # trace content sealed with the development key
ui.render_alert_banner()  # firing alerts of this workspace
if not ui.may_open(identity, page):  # never reached through the navigation: a check behind it
    st.error("Your role may not open this page.", icon=":material/block:")
    st.stop()
page.run()
