"""The in-loop instruments: Probe, ProbeSet, attribution, parameter groups, step summaries and
the one evaluation record.
"""
