"""Node-side job code (each row's command helpers).

Import it as ``launcher.jobs`` (the installed name: the package links ``launcher/jobs`` to this
directory); from a checkout's root ``jobs`` alone also resolves, but nothing in the project uses it.
"""
