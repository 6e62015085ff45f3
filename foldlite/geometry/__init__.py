"""foldlite.geometry"""
