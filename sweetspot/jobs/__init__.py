"""The workflow's jobs as library functions, each named after what it does.

Rule scripts (workflow/scripts) only unpack Snakemake's inputs and params and call one of these.
"""
