"""What a study is: its TOML definition, search space, samplers, forced settings, ImageNet check, spreadsheets.

Imports no other part of `search/`.
"""
