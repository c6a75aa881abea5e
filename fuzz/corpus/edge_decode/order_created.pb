
o-2created€¸½Â«3*

SKU-CAB-022 
	Zhang San139000000002 Lane