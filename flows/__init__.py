"""Work the daemon runs outside its own loop: table builds, training, evaluation, publishing.

Modules here may import heavy libraries, but only inside functions or subprocess entry points that
`apply` reaches; `validate` and `plan` import at most the light helpers named in daemon/CONTRACTS.md.
"""
