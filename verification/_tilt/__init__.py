"""The keyed cosine tilt: an ownership channel on natural inputs (issue 15, experimental).

A trigger watermark shows only on stamped inputs, so a student trained on clean data never
inherits it. The tilt is expressed on *natural* inputs instead: the owner's model adds a small,
keyed, periodic term to each class logit, ``eps * cos(omega * s_c(x) + phase_c)``, where
``s_c(x)`` is a key-derived projection of the image's low-frequency content. A student distilled
or extracted from the model learns it with everything else, because the thief's own queries show
it. An arbiter measures it black-box on committed images and ranks the secret key's statistic
among null keys of the same family, exactly as for triggers (``docs/METHOD.md`` section 4).

``family`` derives a key's parameters from a 32-byte secret, ``features`` the projections'
input (pooled low-frequency DCT coefficients, defined relative to the image side), and
``statistic`` the labels-only and probability statistics for many keys at once.
"""
