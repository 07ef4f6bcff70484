"""The product's rules, independent of any bench: control-pilot maths, the LED classifier, the requirement catalogue and limits."""
