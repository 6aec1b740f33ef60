"""OpusBlocks Workbench core: the whole domain, importable without Streamlit.

Pages, workers and the command line all go through the functions here; nothing
else talks to the database or to a model provider.
"""

__version__ = "0.1.0"
