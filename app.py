"""OpusBlocks Workbench: the frame (page config, identity, navigation, status).

Run with ``streamlit run app.py`` (``make run`` migrates and seeds the demo first).
"""

import streamlit as st

from core import ui

st.set_page_config(page_title="OpusBlocks Workbench", page_icon=":material/fact_check:", layout="wide")

ui.engine()  # migrations run once per process, inside the cached factory
ui.bootstrap_identity()  # one default tenant and user until the login issue

pages = {
    "Research": [
        st.Page("pages/write.py", title="Write", icon=":material/edit_note:", default=True),
        st.Page("pages/verification.py", title="Verification", icon=":material/fact_check:"),
    ],
    "Operations": [
        st.Page("pages/costs.py", title="Costs", icon=":material/payments:"),
        st.Page("pages/routing.py", title="Routing", icon=":material/alt_route:"),
        st.Page("pages/trajectories.py", title="Trajectories", icon=":material/timeline:"),
        st.Page("pages/prompts.py", title="Prompts", icon=":material/description:"),
        st.Page("pages/operations.py", title="Operations", icon=":material/monitor_heart:"),
    ],
}
page = st.navigation(pages)
ui.render_status()
ui.render_controls_banner(ui.generation_status())  # kill switch and open breakers, above every page
ui.render_key_warning()  # trace content sealed with the development key
ui.render_alert_banner()  # firing alerts of this workspace
page.run()
