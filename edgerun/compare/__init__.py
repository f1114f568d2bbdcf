"""What a conversion costs and buys: reference vs candidates (`comparison`), accuracy, and `tune`.

These sit above `edgerun.loading` because they load candidates by ``name@precision``.
"""
