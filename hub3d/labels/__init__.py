"""Class-name files, one name per line in class-index order; hub3d reads only these (never a config's path).

kinetics400.txt / kinetics700_alphabetical.txt: the Kinetics class lists; ucf101.txt, hmdb51.txt: the split files'
class order; moments_in_time.txt; sports1m.txt: the Sports-1M dataset's labels.txt (gtoderici/sports-1m-dataset,
Karpathy et al. 2014, CC BY 3.0), label 0 boomerang ... 486 model aircraft; synthetic_motion.txt: motion_demo's.
"""
