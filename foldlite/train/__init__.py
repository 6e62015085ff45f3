"""foldlite.train"""
