int main() { return 1; }  // placeholder until this program lands
