"""Write (researchers): a manuscript, its source PDFs and its paragraph blocks."""

import streamlit as st

from core import ui
from core.documents import list_documents
from core.facts import list_facts
from core.manuscripts import add_paragraph, create_manuscript, list_manuscripts, list_paragraphs
from core.settings import get_settings

st.title("Write")
ident = ui.identity()
paused = ui.generation_pause(ui.generation_status())  # the banner above says why; the buttons obey it


def new_manuscript_form() -> None:
    with st.form("write_new_manuscript", clear_on_submit=True, border=False):
        title = st.text_input("Title", placeholder="e.g. Sparse retrieval for clinical notes")
        if st.form_submit_button("Create manuscript", type="primary"):
            ui.act(
                lambda s: st.session_state.__setitem__(
                    "write_created_id",
                    create_manuscript(s, tenant_id=ident.tenant_id, title=title, user_id=ident.user_id).id,
                )
            )


# A manuscript created on the previous run becomes the selection before the selectbox exists.
if "write_created_id" in st.session_state:
    st.session_state["write_manuscript_id"] = st.session_state.pop("write_created_id")

with ui.session() as s:
    titles = {m.id: m.title for m in list_manuscripts(s, tenant_id=ident.tenant_id)}
if not titles:
    st.info("Start with a manuscript: give it a title, then upload the PDFs you want it to cite.")
    new_manuscript_form()
    st.stop()
if st.session_state.get("write_manuscript_id") not in titles:
    st.session_state["write_manuscript_id"] = next(iter(titles))

pick, new = st.columns([4, 1], vertical_alignment="bottom")
manuscript_id: int = pick.selectbox(
    "Manuscript", list(titles), format_func=titles.__getitem__, key="write_manuscript_id"
)
with new.popover("New manuscript", icon=":material/add:", width="stretch"):
    new_manuscript_form()

# Sources ----------------------------------------------------------------------------------------
st.subheader("Sources")
upload_col, lists_col = st.columns(2)
ui.adopt_live_jobs()  # uploads and drafts still running from before a reload are followed again
uploads = ui.upload_track(manuscript_id)
nonce = st.session_state.get("write_upload_nonce", 0)
files = upload_col.file_uploader(
    "Add PDFs",
    type="pdf",
    accept_multiple_files=True,
    key=f"write_upload_{manuscript_id}_{nonce}",
    max_upload_size=get_settings().max_upload_mb,
    help="Text PDFs (not scans). The Librarian extracts facts, each quoting the PDF verbatim.",
    disabled=paused is not None,
)
if paused:
    upload_col.caption(f":material/block: {paused}")
if files:
    st.session_state[f"{uploads}_done"] = []  # the report below is about this batch
    refused = ui.start_uploads(files, manuscript_id=manuscript_id, track=uploads)  # one ingest job per file
    st.session_state["write_upload_refused"] = (manuscript_id, refused)
    st.session_state["write_upload_nonce"] = nonce + 1  # a fresh, empty uploader after the rerun
    st.rerun()
refused_for, refused = st.session_state.pop("write_upload_refused", (None, []))  # said once, after the rerun
with upload_col:
    for message in refused if refused_for == manuscript_id else []:
        st.error(ui.md_escape(message), icon=":material/cloud_off:")
    ui.follow_jobs(uploads, done=f"{uploads}_done")
    ui.upload_report(f"{uploads}_done")

with ui.session() as s:
    documents = list_documents(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id)
    facts = list_facts(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id)
    names = {d.id: d.filename for d in documents}
    with lists_col.expander(f"Documents · {len(documents)}"):
        st.dataframe(
            [{"File": d.filename, "Title": d.title or "", "Pages": d.page_count} for d in documents],
            hide_index=True,
        )
    with lists_col.expander(f"Facts · {len(facts)}"):
        st.dataframe(
            [
                {
                    "Id": f.ref,
                    "Kind": f.kind,
                    "Fact": f.text,
                    "Quote": f.quote,
                    "Source": names.get(f.document_id, ""),
                    "Page": f.page,
                }
                for f in facts
            ],
            hide_index=True,
        )

    # Paragraphs ---------------------------------------------------------------------------------
    st.subheader("Paragraphs")
    paragraphs = list_paragraphs(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id)
    if not facts:
        st.caption("Upload PDFs first: the Writer only cites facts extracted from your sources.")
    if paused and paragraphs:
        st.caption(f":material/block: {paused}")
    for paragraph in paragraphs:
        ui.paragraph_block(s, ident, paragraph, names, paused=paused)

with st.form("write_new_paragraph", clear_on_submit=True):
    brief = st.text_area(
        "Brief for a new paragraph",
        placeholder="What should this paragraph say? e.g. Summarise how the method was evaluated and its main result.",
    )
    if st.form_submit_button("Add paragraph", icon=":material/add:"):
        ui.act(lambda s: add_paragraph(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id, brief=brief))
