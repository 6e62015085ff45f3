"""foldlite.physics"""
